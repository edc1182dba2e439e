# uv-hello: a complete server on libsmtpd-uv (examples/uv-hello.c,
# docs/uv.md), built with the libuv adapter. ctest drives it with real
# clients (tests/uv.cmake).
if(SMTPD_HAVE_UV)
  add_executable(uv-hello ${CMAKE_CURRENT_LIST_DIR}/uv-hello.c)
  target_compile_options(uv-hello PRIVATE ${SMTPD_WARNINGS})
  target_link_libraries(uv-hello PRIVATE smtpd_uv_static PkgConfig::LIBUV)
endif()
