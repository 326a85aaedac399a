// Catch2 main for the MPI tests: run under `mpirun -np N`; every rank runs every test and
// reports failures of its own (Catch2 prints them with the rank's output).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "dist/world.hpp"
#include "mpi_world.hpp"

titan::dist::World* g_world = nullptr;

int main(int argc, char** argv) {
  titan::dist::World world(&argc, &argv);
  g_world = &world;
  const int failed = Catch::Session().run(argc, argv);
  // Every rank must see the same verdict, or mpirun could report success for a failing rank.
  return world.agree_exit_code(failed ? 1 : 0);
}
