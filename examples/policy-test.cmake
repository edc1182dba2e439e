# policy-test: a small mail policy (examples/policy-test/policy.c: a
# recipient allow-list, blocked sender domains, a size cap, a deferred
# directory lookup) and its unit test, written with Check and transcripts
# the way a user of the libraries would: it links smtpd::smtpd and
# smtpd::transcript and runs examples/policy-test/*.txt against the
# policy's real callbacks. ctest runs it as policy_test.
add_library(smtpd_example_policy STATIC
  ${CMAKE_CURRENT_LIST_DIR}/policy-test/policy.c)
target_compile_options(smtpd_example_policy PRIVATE ${SMTPD_WARNINGS})
target_include_directories(smtpd_example_policy PUBLIC
  ${CMAKE_CURRENT_LIST_DIR}/policy-test)
target_link_libraries(smtpd_example_policy PUBLIC smtpd::smtpd)

if(SMTPD_BUILD_TESTS AND PkgConfig_FOUND)
  pkg_check_modules(POLICY_CHECK IMPORTED_TARGET check)
  if(POLICY_CHECK_FOUND)
    add_executable(policy_test ${CMAKE_CURRENT_LIST_DIR}/policy-test/policy_test.c)
    target_compile_options(policy_test PRIVATE ${SMTPD_WARNINGS})
    target_compile_definitions(policy_test PRIVATE
      POLICY_TEST_DIR="${CMAKE_CURRENT_LIST_DIR}/policy-test")
    target_link_libraries(policy_test PRIVATE smtpd_example_policy
      smtpd::transcript smtpd::smtpd PkgConfig::POLICY_CHECK)
    # examples/ is configured before the top level enables testing
    enable_testing()
    add_test(NAME policy_test COMMAND policy_test)
    set_tests_properties(policy_test PROPERTIES
      ENVIRONMENT "CK_DEFAULT_TIMEOUT=120" TIMEOUT 600)
  endif()
endif()
