# Turns sql/NNN_*.sql into a C++ header with the migrations in order, so the binary
# carries its own schema. Run as: cmake -DSQL_DIR=... -DOUT=... -P embed_sql.cmake
file(GLOB migrations LIST_DIRECTORIES false "${SQL_DIR}/[0-9][0-9][0-9]_*.sql")
list(SORT migrations)
set(body "// Generated from sql/*.sql by cmake/embed_sql.cmake; do not edit.\n#pragma once\n\n")
string(APPEND body "#include <string_view>\n\nnamespace somrated::migrations {\n\n")
string(APPEND body "/// One forward-only schema step; version is its NNN prefix.\n")
string(APPEND body "struct migration {\n  int version;\n  std::string_view name;\n  std::string_view sql;\n};\n\n")
string(APPEND body "/// Every migration, ascending by version.\ninline constexpr migration all[] = {\n")
foreach(path IN LISTS migrations)
  get_filename_component(name "${path}" NAME)
  string(SUBSTRING "${name}" 0 3 version)
  math(EXPR version "${version}")  # drop leading zeros
  file(READ "${path}" text)
  string(APPEND body "    {${version}, \"${name}\", R\"somrated_sql(${text})somrated_sql\"},\n")
endforeach()
string(APPEND body "};\n\n}  // namespace somrated::migrations\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
