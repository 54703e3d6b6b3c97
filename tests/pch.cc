// The precompiled headers of the tests (tests/CMakeLists.txt) are built
// with this translation unit, and reused by every test.
