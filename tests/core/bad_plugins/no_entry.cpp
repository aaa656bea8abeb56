// A shared library that is not a kvrun plugin at all.
extern "C" __attribute__((visibility("default"))) int some_other_library_function() { return 42; }
