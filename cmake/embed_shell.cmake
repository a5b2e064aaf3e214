# Writes a C++ source that defines the job's fixed shell code (controller/config/job/*.sh) as
# string literals, one function per file. Run as:
#   cmake -DJOB_DIR=... -DOUTPUT=... -P embed_shell.cmake
set(delim "evalctl_shell")
set(out "// Generated from controller/config/job by cmake/embed_shell.cmake. Do not edit.\n")
string(APPEND out "#include \"controller/config/job_shell.h\"\n\nnamespace evalctl::config {\n")
foreach(pair "JobLibrary=lib.sh" "JobDeployLibrary=deploy_lib.sh" "ServerDriver=server_driver.sh"
             "EvalDriver=eval_driver.sh")
  string(REPLACE "=" ";" parts "${pair}")
  list(GET parts 0 fn)
  list(GET parts 1 file)
  file(READ "${JOB_DIR}/${file}" content)
  string(FIND "${content}" ")${delim}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${file} contains the embedding delimiter")
  endif()
  string(APPEND out "\nabsl::string_view ${fn}() {\n  return R\"${delim}(${content})${delim}\";\n}\n")
endforeach()
string(APPEND out "\n}  // namespace evalctl::config\n")
file(WRITE "${OUTPUT}.tmp" "${out}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
