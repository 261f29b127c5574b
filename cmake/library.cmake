# libedgellm: the library applications embed, as a shared library with a versioned soname and as
# a static archive, both made of the objects of EDGELLM_LIBRARY_MODULES (CMakeLists.txt), which the
# tool and the tests keep linking as internal static libraries. docs/embedding.md explains it.
#
# Only the functions edgellm.h marks EDGELLM_API are global in either: the objects are compiled
# with hidden visibility, which keeps the rest out of the .so's dynamic symbol table; the archive
# is one relocatable object (ld -r) whose hidden symbols objcopy then makes local, so an app that
# also links another library with gguf_* or ellm_* functions of its own links without clashes.
if(EMSCRIPTEN)
  return() # the browser build links the modules into its wasm module directly
endif()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Before 1.0 every minor version may change the ABI, so it is part of the soname then.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(EDGELLM_SOVERSION 0.${PROJECT_VERSION_MINOR})
  set(edgellm_compatibility SameMinorVersion)
else()
  set(EDGELLM_SOVERSION ${PROJECT_VERSION_MAJOR})
  set(edgellm_compatibility SameMajorVersion)
endif()

set(edgellm_library_objects "")
foreach(module IN LISTS EDGELLM_LIBRARY_MODULES)
  list(APPEND edgellm_library_objects $<TARGET_OBJECTS:edgellm_${module}>)
endforeach()
set(EDGELLM_LIBRARY_DIR ${CMAKE_BINARY_DIR}/lib)

# The target is not called edgellm: that name is the command's.
add_library(edgellm_shared SHARED ${edgellm_library_objects})
set_target_properties(edgellm_shared PROPERTIES OUTPUT_NAME edgellm LINKER_LANGUAGE C
  VERSION ${PROJECT_VERSION} SOVERSION ${EDGELLM_SOVERSION}
  LIBRARY_OUTPUT_DIRECTORY ${EDGELLM_LIBRARY_DIR})
target_link_libraries(edgellm_shared PRIVATE Threads::Threads m)
target_include_directories(edgellm_shared INTERFACE
  $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<BUILD_INTERFACE:${CMAKE_BINARY_DIR}/include>)
# Every reference resolved at link time: the core needs nothing beyond libc, libm and pthreads.
# (The sanitizers' runtime provides symbols only at load time.)
if(NOT EDGELLM_SANITIZE AND NOT EDGELLM_TSAN)
  target_link_options(edgellm_shared PRIVATE -Wl,--no-undefined)
endif()

set(EDGELLM_STATIC_ARCHIVE ${EDGELLM_LIBRARY_DIR}/libedgellm.a)
set(edgellm_relocatable ${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/edgellm_static.dir/edgellm.o)
add_custom_command(OUTPUT ${EDGELLM_STATIC_ARCHIVE}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${EDGELLM_LIBRARY_DIR}
    ${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/edgellm_static.dir
  COMMAND ${CMAKE_LINKER} -r -o ${edgellm_relocatable} ${edgellm_library_objects}
  COMMAND ${CMAKE_OBJCOPY} --localize-hidden ${edgellm_relocatable}
  COMMAND ${CMAKE_COMMAND} -E rm -f ${EDGELLM_STATIC_ARCHIVE}
  COMMAND ${CMAKE_AR} qc ${EDGELLM_STATIC_ARCHIVE} ${edgellm_relocatable}
  COMMAND ${CMAKE_RANLIB} ${EDGELLM_STATIC_ARCHIVE}
  DEPENDS ${edgellm_library_objects}
  COMMAND_EXPAND_LISTS
  COMMENT "Linking C static library lib/libedgellm.a (one object, internal symbols local)")
add_custom_target(edgellm_static ALL DEPENDS ${EDGELLM_STATIC_ARCHIVE})
# The object files of both are other targets' outputs: those targets build first.
foreach(module IN LISTS EDGELLM_LIBRARY_MODULES)
  add_dependencies(edgellm_shared edgellm_${module})
  add_dependencies(edgellm_static edgellm_${module})
endforeach()

# ---- install: header, both libraries, pkg-config files, CMake package ----------------------
install(TARGETS edgellm_shared
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development)
install(FILES ${EDGELLM_STATIC_ARCHIVE} DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development)
install(FILES ${CMAKE_SOURCE_DIR}/include/edgellm.h ${CMAKE_BINARY_DIR}/include/edgellm_version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)
if(TARGET edgellm)
  install(TARGETS edgellm RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
endif()

# The .pc files find the prefix from their own place (pkg-config's pcfiledir), so a tree
# installed with `cmake --install --prefix DIR` or moved afterwards still describes itself.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  message(FATAL_ERROR "edgellm's pkg-config and CMake package files need CMAKE_INSTALL_LIBDIR and "
                      "CMAKE_INSTALL_INCLUDEDIR relative to the prefix")
endif()
file(RELATIVE_PATH EDGELLM_PC_PREFIX_FROM_PCFILEDIR
  /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" EDGELLM_PC_PREFIX_FROM_PCFILEDIR "${EDGELLM_PC_PREFIX_FROM_PCFILEDIR}")
foreach(pc edgellm edgellm-static)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/${pc}.pc.in ${CMAKE_BINARY_DIR}/pkgconfig/${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/${pc}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT development)
endforeach()

set(edgellm_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/edgellm)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/edgellmConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/edgellmConfig.cmake
  INSTALL_DESTINATION ${edgellm_cmake_dir}
  PATH_VARS CMAKE_INSTALL_LIBDIR CMAKE_INSTALL_INCLUDEDIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/edgellmConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${edgellm_compatibility})
install(FILES ${CMAKE_BINARY_DIR}/cmake/edgellmConfig.cmake
  ${CMAKE_BINARY_DIR}/cmake/edgellmConfigVersion.cmake
  DESTINATION ${edgellm_cmake_dir} COMPONENT development)
