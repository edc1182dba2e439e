# Interop tests: smtpd-maildir against real clients (tests/interop/*.py).
# Each script starts its own server on 127.0.0.1 with a temporary Maildir;
# a script whose client program is missing exits 77 (skipped).
if(TARGET smtpd-maildir)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    set(_interop_tests smtplib swaks curl smtp_source faults tls auth
                       extensions lmtp proxy xclient workers defences
                       delivery)
    foreach(t ${_interop_tests})
      if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/interop/test_${t}.py)
        add_test(NAME interop_${t}
          COMMAND ${Python3_EXECUTABLE}
                  ${CMAKE_CURRENT_LIST_DIR}/interop/test_${t}.py
                  --server $<TARGET_FILE:smtpd-maildir>)
        set_tests_properties(interop_${t} PROPERTIES
          TIMEOUT 180 SKIP_RETURN_CODE 77 LABELS interop
          ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1")
      endif()
    endforeach()
    # the poll(2) build of the same program: the smtplib and fault suites
    if(TARGET smtpd-maildir-poll)
      foreach(t smtplib faults)
        add_test(NAME interop_${t}_poll
          COMMAND ${Python3_EXECUTABLE}
                  ${CMAKE_CURRENT_LIST_DIR}/interop/test_${t}.py
                  --server $<TARGET_FILE:smtpd-maildir-poll>)
        set_tests_properties(interop_${t}_poll PROPERTIES
          TIMEOUT 180 SKIP_RETURN_CODE 77 LABELS interop)
      endforeach()
    endif()
  endif()
endif()
