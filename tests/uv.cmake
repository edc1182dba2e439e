# libsmtpd-uv (docs/uv.md): examples/uv-hello and tests/uv/uv-testd driven
# by real clients (tests/uv/test_uv.py: smtplib with STARTTLS and AUTH,
# swaks, Postfix's smtp-source, raw sockets for the faults). A case whose
# client program is missing exits 77 (skipped).
if(SMTPD_HAVE_UV AND TARGET uv-hello)
  add_executable(uv-testd ${CMAKE_CURRENT_LIST_DIR}/uv/uv-testd.c)
  target_compile_options(uv-testd PRIVATE ${SMTPD_WARNINGS})
  target_link_libraries(uv-testd PRIVATE smtpd_uv_static PkgConfig::LIBUV)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    foreach(t hello_smtplib hello_swaks hello_smtp_source hello_shutdown_load
              defer_rcpt async_body deadline
              never_reads drop_mid_data caps shutdown implicit_tls unix ipv6)
      add_test(NAME uv_${t}
        COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/uv/test_uv.py
                --hello $<TARGET_FILE:uv-hello>
                --testd $<TARGET_FILE:uv-testd> ${t})
      set_tests_properties(uv_${t} PROPERTIES
        TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS "uv;interop"
        ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1")
    endforeach()
  endif()
endif()
