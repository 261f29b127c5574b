/* Hex digits for the core's text formats (byte tokens "<0xAB>", grammar escapes); the modules
 * outside the core use libsodium's sodium_bin2hex/sodium_hex2bin. */
#ifndef EDGELLM_CORE_HEX_H
#define EDGELLM_CORE_HEX_H

/* The value of hex digit c (either case), or -1. */
static inline int ellm_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
