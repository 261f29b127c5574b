# Cross-compiles edgellm for 64-bit ARM Linux with Debian's aarch64-linux-gnu toolchain
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross) and runs the test binaries under qemu-user:
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DEDGELLM_BUILD_TOOLS=OFF
# (`make arm-test` does this). The CLI and server need ARM builds of their -dev libraries, so
# only the inference core and its C tests are built here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(EDGELLM_ARM_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${EDGELLM_ARM_TRIPLE}-gcc)
set(EDGELLM_ARM_SYSROOT /usr/${EDGELLM_ARM_TRIPLE})

set(CMAKE_FIND_ROOT_PATH ${EDGELLM_ARM_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Host .pc files describe x86-64 libraries: never let pkg-config hand them to the ARM build.
set(ENV{PKG_CONFIG_LIBDIR} ${EDGELLM_ARM_SYSROOT}/lib/pkgconfig)

# CTest runs every test binary through the user-mode emulator, which loads the ARM dynamic linker
# and libc from the cross sysroot.
find_program(EDGELLM_QEMU_AARCH64 qemu-aarch64)
if(EDGELLM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EDGELLM_QEMU_AARCH64} -L ${EDGELLM_ARM_SYSROOT})
endif()
