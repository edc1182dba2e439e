# Installs into a temporary prefix and builds a consumer against it.
add_test(NAME install_consumer
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/install/check_install.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(install_consumer PROPERTIES TIMEOUT 300 LABELS install)
