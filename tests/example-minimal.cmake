# examples/minimal.c against a real client (tests/interop/test_minimal.py,
# Python smtplib): plaintext and STARTTLS delivery, the recipient policy,
# one client after another. Labelled interop with the others.
if(TARGET smtpd-minimal)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    add_test(NAME interop_minimal
      COMMAND ${Python3_EXECUTABLE}
              ${CMAKE_CURRENT_LIST_DIR}/interop/test_minimal.py
              --server $<TARGET_FILE:smtpd-minimal>)
    set_tests_properties(interop_minimal PROPERTIES
      TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS interop)
  endif()
endif()
