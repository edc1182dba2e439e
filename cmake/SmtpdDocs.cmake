# SmtpdDocs.cmake - manual pages and the API reference.
#
# Man pages: every docs/man/NAME.N (N = 1..8) is installed to
# ${CMAKE_INSTALL_MANDIR}/manN by `cmake --install`.
#
# API reference: when Doxygen is found, the target `doc` (not part of
# `all`) writes HTML from the public headers include/smtpd/*.h, with
# README.md as the main page and docs/*.md, CHANGELOG.md as pages, to
# ${PROJECT_BINARY_DIR}/doc/html. Warnings are printed, never fatal.

file(GLOB SMTPD_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/man/*.[1-8])
foreach(_page ${SMTPD_MAN_PAGES})
  string(REGEX MATCH "[1-8]$" _section "${_page}")
  install(FILES ${_page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_section})
endforeach()

find_package(Doxygen QUIET)
if(DOXYGEN_FOUND)
  set(SMTPD_DOXYGEN_INPUT ${PROJECT_SOURCE_DIR}/include/smtpd)
  set(SMTPD_DOXYGEN_OUTPUT ${PROJECT_BINARY_DIR}/doc)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/Doxyfile.in
                 ${PROJECT_BINARY_DIR}/Doxyfile @ONLY)
  file(GLOB _smtpd_doc_inputs CONFIGURE_DEPENDS ${SMTPD_DOXYGEN_INPUT}/*.h
       ${PROJECT_SOURCE_DIR}/docs/*.md)
  add_custom_command(OUTPUT ${SMTPD_DOXYGEN_OUTPUT}/html/index.html
    COMMAND ${DOXYGEN_EXECUTABLE} ${PROJECT_BINARY_DIR}/Doxyfile
    DEPENDS ${PROJECT_BINARY_DIR}/Doxyfile ${_smtpd_doc_inputs}
            ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/CHANGELOG.md
            ${PROJECT_SOURCE_DIR}/cmake/doxygen-filter.sed
    WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
    COMMENT "Doxygen: API reference in ${SMTPD_DOXYGEN_OUTPUT}/html"
    VERBATIM)
  add_custom_target(doc DEPENDS ${SMTPD_DOXYGEN_OUTPUT}/html/index.html)
endif()
