/* Native work run from a Python thread: here, with or without the GIL, or
 * on a driver thread that is the OpenMP master of its own team, while the
 * Python thread waits interruptibly (runtime/wait.h). Python threads never
 * enter an OpenMP region themselves, so a child forked after parpy ran (GNU
 * OpenMP's pool does not survive fork) starts fresh drivers. */
#ifndef PARPY_ENGINE_TEAMS_H
#define PARPY_ENGINE_TEAMS_H

#include "parpy.h"

#include <pthread.h>

enum {
    PARPY_SCHED_AUTO = 0,
    PARPY_SCHED_STATIC = 1,
    PARPY_SCHED_DYNAMIC = 2,
    PARPY_SCHED_GUIDED = 3,
};

typedef struct parpy_team_job {
    /* No GIL, no Python API: runs on every thread of the team (team 1), or
       alone on one thread (team 0). In a team, a loop under
       "omp for schedule(runtime)" follows schedule and chunksize. */
    void (*body)(void *arg, int team);
    void *arg;
    int nthreads;
    int schedule; /* PARPY_SCHED_*: AUTO leaves OpenMP's runtime schedule as it is */
    int chunksize;
    atomic_int *cancel; /* set when the wait for the job is interrupted */
    /* the driver signals completion */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} parpy_team_job;

/* Runs job, whose work is estimated at cost ns: with nthreads 1, here with
   the GIL held below release_ns, here without it below a few ms; else on a
   driver. GIL held on entry and return. Returns 0, or -1 with the signal
   handlers' exception set once *job->cancel was set and every thread of the
   job is at rest. */
int parpy_team_run(parpy_team_job *job, double cost, double release_ns);

/* Inside a job's body on a team: waits until every thread of the team is
   here. What each thread did before happens before what each does after. */
void parpy_team_barrier(void);
/* Inside a job's body on a team: this thread's number, 0 for the driver;
   and the team's size, which OpenMP may have made smaller than asked. */
int parpy_team_thread(void);
int parpy_team_size(void);

/* Threads a batch uses when workers is not given. */
int parpy_default_threads(void);
void parpy_set_num_threads(int n); /* n <= 0 restores the default */
int parpy_teams_init(void);        /* once per process; -1 with an exception set */

#endif /* PARPY_ENGINE_TEAMS_H */
