#include "dist/world.hpp"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "dist/process_group.hpp"

namespace titan::dist {

namespace {
bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_SIZE");
}
}  // namespace

World::World(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  mpi_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // Local rank: the rank within the shared-memory (node) communicator.
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
}

World::~World() {
  if (mpi_) MPI_Finalize();
}

int World::agree_exit_code(int code, const std::string& own_error) const {
  if (!mpi_) return code;
  int out = code;
  MPI_Request req;
  MPI_Iallreduce(&code, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &req);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(collective_timeout_seconds());
  for (int done = 0;;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) return out;
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!own_error.empty()) std::fprintf(stderr, "error: [rank %d] %s\n", rank_, own_error.c_str());
  std::fprintf(stderr,
               "error: [rank %d] comm: the other ranks did not reach the end of the run within %s = %g s; stopping the job\n",
               rank_, collective_timeout_key().c_str(), collective_timeout_seconds());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
  return code;  // not reached
}

int World::rank0_code(int code) const {
  if (!mpi_) return code;
  MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return code;
}

}  // namespace titan::dist
