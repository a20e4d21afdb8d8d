# Writes the linker dynamic list of the retake binary: the symbols the control module leaves
# undefined (what it calls in the binary). Versioned ones (name@VERSION) come from system
# libraries and are left out. Run by cli/CMakeLists.txt after the module is linked:
#   cmake -DNM=nm -DMODULE=retake-control.so -DOUT=retake-exports.list -P exports_list.cmake
execute_process(COMMAND ${NM} -D --undefined-only ${MODULE}
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D --undefined-only ${MODULE} failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(body "")
foreach(line IN LISTS lines)
  string(STRIP "${line}" line)
  if(line MATCHES "^[Uw] ([^@ ]+)$")
    string(APPEND body "  \"${CMAKE_MATCH_1}\";\n")
  endif()
endforeach()
file(WRITE "${OUT}.tmp" "{\n${body}};\n")
# Unchanged list, unchanged file: the binary is not relinked for nothing.
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
