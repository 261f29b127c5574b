# The chat page (web/demo) inside `edgellm serve`: its files become C arrays at build time
# (web/embed_page_files.cmake), so the server needs no files at run time. Two copies of
# index.html go in: as written (the page runs the model in the browser: `serve --web`) and marked
# data-backend="server" (the page chats through the server's API: `serve`'s page at "/").
set(page_dir ${CMAKE_SOURCE_DIR}/web/demo)
set(page_c ${CMAKE_BINARY_DIR}/generated/chat_page_files.c)
add_custom_command(OUTPUT ${page_c}
  COMMAND ${CMAKE_COMMAND} -DPAGE_DIR=${page_dir} -DOUT=${page_c}
    -P ${CMAKE_SOURCE_DIR}/web/embed_page_files.cmake
  DEPENDS ${page_dir}/index.html ${page_dir}/demo.js ${page_dir}/demo.css ${page_dir}/markdown.js
    ${CMAKE_SOURCE_DIR}/web/embed_page_files.cmake
  COMMENT "Embedding the chat page (web/demo) in edgellm serve")
target_sources(edgellm_server PRIVATE ${page_c})
# Where `serve --web` looks for the browser build (make web) without --web-root: the install
# location, then this source tree's web/dist.
if(TARGET edgellm)
  target_compile_definitions(edgellm PRIVATE
    EDGELLM_WEB_DIRS="${CMAKE_INSTALL_PREFIX}/share/edgellm/web:${CMAKE_SOURCE_DIR}/web/dist")
endif()
