# cmake -DPAGE_DIR=web/demo -DOUT=chat_page_files.c -P embed_page_files.cmake: writes the page's
# files as the ellm_srv_page_files table of src/server/chat_page.h.
function(c_array var file)
  file(READ ${file} hex HEX)
  string(LENGTH "${hex}" n)
  if(n EQUAL 0)
    message(FATAL_ERROR "${file} is empty")
  endif()
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
  set(${var} "${bytes}" PARENT_SCOPE)
endfunction()

file(READ ${PAGE_DIR}/index.html index)
string(REPLACE "<html lang=\"en\">" "<html lang=\"en\" data-backend=\"server\">" server_index "${index}")
if(server_index STREQUAL index)
  message(FATAL_ERROR "${PAGE_DIR}/index.html has no '<html lang=\"en\">' to mark for the server")
endif()
get_filename_component(out_dir ${OUT} DIRECTORY)
file(WRITE ${out_dir}/index-server.html "${server_index}")

c_array(index_bytes ${PAGE_DIR}/index.html)
c_array(server_bytes ${out_dir}/index-server.html)
c_array(js_bytes ${PAGE_DIR}/demo.js)
c_array(css_bytes ${PAGE_DIR}/demo.css)
c_array(markdown_bytes ${PAGE_DIR}/markdown.js)
file(WRITE ${OUT}.tmp "/* Generated from web/demo by web/embed_page_files.cmake: do not edit. */
#include \"server/chat_page.h\"

static const unsigned char index_browser[] = {
${index_bytes}};
static const unsigned char index_server[] = {
${server_bytes}};
static const unsigned char demo_js[] = {
${js_bytes}};
static const unsigned char demo_css[] = {
${css_bytes}};
static const unsigned char markdown_js[] = {
${markdown_bytes}};

const srv_page_file ellm_srv_page_files[] = {
    {\"/index.html\", \"text/html; charset=utf-8\", index_browser, sizeof index_browser},
    {\"/index-server.html\", \"text/html; charset=utf-8\", index_server, sizeof index_server},
    {\"/demo.js\", \"text/javascript; charset=utf-8\", demo_js, sizeof demo_js},
    {\"/demo.css\", \"text/css; charset=utf-8\", demo_css, sizeof demo_css},
    {\"/markdown.js\", \"text/javascript; charset=utf-8\", markdown_js, sizeof markdown_js},
};
const size_t ellm_srv_n_page_files = sizeof ellm_srv_page_files / sizeof ellm_srv_page_files[0];
")
file(RENAME ${OUT}.tmp ${OUT})
