// retake: command-line entry point. Thin: parse, call a library, print.
#include <iostream>

int main(int argc, char** argv) {
  std::cout << "retake 0.1.0\n";
  return 0;
}
