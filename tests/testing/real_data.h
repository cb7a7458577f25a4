// Where the real-people data (MovieLens, for evaluation only; never shipped in the repository)
// is: $TAILOR_REAL_DATA, or the shared folder beside this checkout, or the workspace's shared
// folder (a CI clone may live elsewhere). "" when none has it: the test should skip.
#ifndef TAILOR_TESTS_TESTING_REAL_DATA_H_
#define TAILOR_TESTS_TESTING_REAL_DATA_H_

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace tailor::testing {

inline std::string FindMovielensData() {
  std::vector<std::string> places;
  if (const char* env = std::getenv("TAILOR_REAL_DATA")) places.push_back(env);
  places.push_back(std::string(TAILOR_SOURCE_DIR) + "/../shared/data/real/movielens-small");
  places.push_back("/work/shared/data/real/movielens-small");
  for (const std::string& place : places) {
    if (std::filesystem::exists(place + "/events.csv")) return place;
  }
  return "";
}

}  // namespace tailor::testing

#endif  // TAILOR_TESTS_TESTING_REAL_DATA_H_
