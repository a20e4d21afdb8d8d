# Links the small C and C++ libraries retake depends on from their static archives (Debian's
# -dev packages ship both), so the binary maps 8 shared objects instead of 23.
#
# Why: each shared object costs every retake process its own relocated data, GOT and the
# pages the loader and the kernel's fault-around touch; fourteen of them added ~0.9 MB to an
# idle recorder (15.6 -> 14.7 MB) and a dozen symbol lookups to every start. From an archive,
# only the objects retake calls are linked, next to the code that calls them.
#
# Kept shared: libc, libm, libstdc++ and libgcc_s (the control module shares them with the
# binary), OpenSSL (security updates must apply without a rebuild) and everything gRPC pulls
# in (only the control module loads it). zlib too: gRPC links the same ZLIB::ZLIB target into
# the control module, a shared object, and Debian's libz.a is not position-independent.
#
# retake_prefer_static(TARGET...) rewrites each imported target's locations and link items
# from /path/libNAME[-VERSION].so[.N...] to /path/libNAME.a when that archive exists, and
# follows the imported targets it links. Nothing changes where an archive is missing.

function(_retake_static_path in out)
  set(result "${in}")
  if(in MATCHES "^(.*/lib)([A-Za-z0-9_+]+(-[A-Za-z][A-Za-z0-9_+]*)*)(-[0-9.]+)?\\.so(\\.[0-9.]+)?$")
    set(candidate "${CMAKE_MATCH_1}${CMAKE_MATCH_2}.a")
    if(EXISTS "${candidate}")
      set(result "${candidate}")
    endif()
  endif()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

function(retake_prefer_static)
  foreach(target ${ARGN})
    if(NOT TARGET ${target})
      continue()
    endif()
    get_target_property(aliased ${target} ALIASED_TARGET)
    if(aliased)
      set(target ${aliased})
    endif()
    get_property(done GLOBAL PROPERTY _retake_static_${target})
    if(done OR target STREQUAL "ZLIB::ZLIB")
      continue()
    endif()
    set_property(GLOBAL PROPERTY _retake_static_${target} TRUE)

    foreach(property IMPORTED_LOCATION IMPORTED_LOCATION_NONE IMPORTED_LOCATION_RELEASE
                     IMPORTED_LOCATION_RELWITHDEBINFO IMPORTED_LOCATION_DEBUG)
      get_target_property(location ${target} ${property})
      if(location)
        _retake_static_path("${location}" static)
        if(NOT static STREQUAL location)
          set_target_properties(${target} PROPERTIES ${property} "${static}")
        endif()
      endif()
    endforeach()

    get_target_property(links ${target} INTERFACE_LINK_LIBRARIES)
    if(links)
      set(rewritten)
      set(followed)
      foreach(item ${links})
        _retake_static_path("${item}" static)
        list(APPEND rewritten "${static}")
        # Imported targets named directly or as $<LINK_ONLY:target>.
        string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" named "${item}")
        if(TARGET "${named}")
          list(APPEND followed "${named}")
        endif()
      endforeach()
      set_target_properties(${target} PROPERTIES INTERFACE_LINK_LIBRARIES "${rewritten}")
      if(followed)
        retake_prefer_static(${followed})
      endif()
    endif()
  endforeach()
endfunction()
