# doxygen-filter.sed - Doxygen INPUT_FILTER for include/smtpd/*.h: turns the
# headers' plain comments into doc comments, leaving the files untouched.
#   "/* text" at the start of a line        -> "/** text" (documents what follows)
#   "decl; /* text" or "member, /* text"     -> "/**< text" (documents the member)
# Section rulers ("/* ---- name ---- */") stay plain comments.
/^[[:space:]]*\/\*[[:space:]]*----/b
s|^\([[:space:]]*\)/\*\([^*]\)|\1/**\2|
s|^\([[:space:]]*\)/\*$|\1/**|
s|\([;,{]\)\([[:space:]]*\)/\*\([^*]\)|\1\2/**<\3|
# "@on", "user@example.org": text, not Doxygen commands (the headers have
# "@" only inside comments)
s|@|\\@|g
