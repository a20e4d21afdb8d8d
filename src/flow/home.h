// retake's home directory, where the default store ($RETAKE_HOME/db) and the CA
// ($RETAKE_HOME/ca) live. Part of src/flow so that every module finds it the same way.
#pragma once

#include <filesystem>

#include "flow/status.h"

namespace retake {

// $RETAKE_HOME when set and non-empty, otherwise "$HOME/.retake" (HOME from the environment,
// else from the password database). not_found when neither gives a home. Creates nothing.
Result<std::filesystem::path> retake_home();

}  // namespace retake
