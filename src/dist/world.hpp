#pragma once
// The process world: MPI when launched by mpirun, otherwise a world of one process without MPI
// (DESIGN.md section 6). Owns MPI_Init/MPI_Finalize.
#include <string>

namespace titan::dist {

class World {
 public:
  // Initializes MPI only when a launcher's environment is present (OMPI_COMM_WORLD_SIZE,
  // PMIX_RANK or PMI_SIZE); plain `run_train` is a world of 1.
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the processes of this node
  int local_size() const { return local_size_; }  // processes on this node
  bool uses_mpi() const { return mpi_; }

  // Every rank passes its exit code; all get back the largest, so that a failure on any rank
  // (e.g. a config file one node cannot read) stops every rank instead of leaving them to hang.
  // Bounded by the collective timeout: if the other ranks never arrive (they wait for this one
  // in a collective it left by failing, or they hang), this rank reports `own_error` and ends the
  // job.
  int agree_exit_code(int code, const std::string& own_error = "") const;
  // Exit code of rank 0 (so other ranks know whether rank 0 already reported the error).
  int rank0_code(int code) const;

 private:
  bool mpi_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace titan::dist
