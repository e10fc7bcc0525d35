/* Driver threads and their OpenMP teams; the thread count; the fork
 * handling of both.
 *
 * A job that is worth a thread runs on a driver: a detached thread that is
 * the OpenMP master of its own team, and goes back on the idle list after
 * each job, so that the next one reuses it and its warm team. The calling
 * thread waits in slices, re-taking the GIL to run signal handlers; on an
 * exception (KeyboardInterrupt) it sets the job's cancel flag, which the
 * job's body polls, and waits for every thread to come to rest before it
 * returns.
 */
#include "engine/teams.h"

#include "runtime/clock.h"
#include "runtime/tsan.h"
#include "runtime/wait.h"

#include <errno.h>
#include <omp.h>
#include <stdlib.h>

#define DISPATCH_NS 5.0e6 /* serial work above this is made interruptible */

/* ---- OpenMP teams ------------------------------------------------------- */

static omp_sched_t
omp_kind(int schedule)
{
    switch (schedule) {
    case PARPY_SCHED_STATIC:
        return omp_sched_static;
    case PARPY_SCHED_GUIDED:
        return omp_sched_guided;
    default:
        return omp_sched_dynamic;
    }
}

/* One team thread's part. */
static void
team_main(parpy_team_job *job)
{
    PARPY_HAPPENS_AFTER(job); /* first: the body reads what the job points to */
    job->body(job->arg, 1);
    PARPY_HAPPENS_BEFORE(job);
}

/* Runs team_main on the current thread and its team. GCC hands job to the
   team through a block on this stack, written here and read by each team
   thread with no edge TSan can see; so this function and its outlined
   region are left uninstrumented, and team_main's annotations order
   everything else. */
PARPY_NO_TSAN static void
team_run(parpy_team_job *job)
{
#pragma omp parallel num_threads(job->nthreads)
    team_main(job);
}

/* Runs the job on the current thread and, when nthreads > 1, its OpenMP
   team. Pure C. */
static void
job_execute(parpy_team_job *job)
{
    if (job->nthreads <= 1) {
        job->body(job->arg, 0);
        return;
    }
    if (job->schedule != PARPY_SCHED_AUTO) {
        omp_set_schedule(omp_kind(job->schedule), job->chunksize);
    }
    /* Region entry and exit, made visible to TSan. */
    PARPY_HAPPENS_BEFORE(job);
    team_run(job);
    PARPY_HAPPENS_AFTER(job);
}

static char barrier_sync; /* TSan's stand-in for the team barrier */

void
parpy_team_barrier(void)
{
    PARPY_HAPPENS_BEFORE(&barrier_sync);
#pragma omp barrier
    PARPY_HAPPENS_AFTER(&barrier_sync);
}

int
parpy_team_thread(void)
{
    return omp_get_thread_num();
}

int
parpy_team_size(void)
{
    return omp_get_num_threads();
}

/* ---- driver threads ----------------------------------------------------- */

typedef struct driver {
    pthread_cond_t cv;
    parpy_team_job *job; /* guarded by pool_mu */
    struct driver *next_idle;
} driver_t;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static driver_t *idle_drivers = NULL; /* guarded by pool_mu */

static void
job_finish(parpy_team_job *job)
{
    pthread_mutex_lock(&job->mu);
    job->done = 1;
    pthread_cond_signal(&job->cv);
    pthread_mutex_unlock(&job->mu);
    /* The waiter may go on from here: job is not touched again. */
}

static void *
driver_main(void *arg)
{
    driver_t *d = arg;
    pthread_mutex_lock(&pool_mu);
    for (;;) {
        while (d->job == NULL) {
            pthread_cond_wait(&d->cv, &pool_mu);
        }
        parpy_team_job *job = d->job;
        pthread_mutex_unlock(&pool_mu);

        job_execute(job);

        /* Back on the idle list before the waiter wakes, so that the next
           call reuses this driver and its warm OpenMP team. */
        pthread_mutex_lock(&pool_mu);
        d->job = NULL;
        d->next_idle = idle_drivers;
        idle_drivers = d;
        pthread_mutex_unlock(&pool_mu);
        job_finish(job);
        pthread_mutex_lock(&pool_mu);
    }
    return NULL;
}

/* Hands job to an idle driver, starting one if none is idle. Returns 0, or
   -1 if no thread could be started. */
static int
dispatch(parpy_team_job *job)
{
    pthread_mutex_lock(&pool_mu);
    driver_t *d = idle_drivers;
    if (d != NULL) {
        idle_drivers = d->next_idle;
        d->job = job;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&pool_mu);
        return 0;
    }
    pthread_mutex_unlock(&pool_mu);

    d = calloc(1, sizeof(driver_t));
    if (d == NULL) {
        return -1;
    }
    pthread_cond_init(&d->cv, NULL);
    d->job = job;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, driver_main, d);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&d->cv);
        free(d);
        return -1;
    }
    return 0;
}

/* In a forked child the drivers do not exist: forget them. Their memory
   (a few bytes each) is left as it is. */
static void
after_fork_child(void)
{
    pthread_mutex_init(&pool_mu, NULL);
    idle_drivers = NULL;
}

/* A slice of the wait for a driver to finish job. */
static int
driver_wait(void *arg, int64_t slice_ns)
{
    parpy_team_job *job = arg;
    struct timespec deadline = parpy_deadline_after(slice_ns);
    pthread_mutex_lock(&job->mu);
    while (!job->done && pthread_cond_timedwait(&job->cv, &job->mu, &deadline) != ETIMEDOUT) {
    }
    int done = job->done;
    pthread_mutex_unlock(&job->mu);
    return done;
}

/* Runs job on a driver while this thread (GIL held) waits interruptibly. */
static int
run_on_driver(parpy_team_job *job)
{
    parpy_cond_init_monotonic(&job->cv);
    pthread_mutex_init(&job->mu, NULL);
    job->done = 0;
    int rc = 0;
    if (dispatch(job) < 0) {
        Py_BEGIN_ALLOW_THREADS
            job_execute(job); /* no thread to be had: run here, uninterruptibly */
        Py_END_ALLOW_THREADS
    }
    else if (parpy_wait_interruptibly(driver_wait, job) < 0) {
        atomic_store(job->cancel, 1);
        parpy_wait_out(driver_wait, job);
        rc = -1;
    }
    pthread_mutex_destroy(&job->mu);
    pthread_cond_destroy(&job->cv);
    return rc;
}

int
parpy_team_run(parpy_team_job *job, double cost, double release_ns)
{
    if (job->nthreads <= 1 && cost < release_ns) {
        job_execute(job);
        return 0;
    }
    if (job->nthreads <= 1 && cost < DISPATCH_NS) {
        Py_BEGIN_ALLOW_THREADS
            job_execute(job);
        Py_END_ALLOW_THREADS
        return 0;
    }
    return run_on_driver(job);
}

/* ---- thread count ------------------------------------------------------- */

static atomic_int num_threads_override = 0;

int
parpy_default_threads(void)
{
    int n = atomic_load(&num_threads_override);
    return n > 0 ? n : omp_get_max_threads();
}

void
parpy_set_num_threads(int n)
{
    atomic_store(&num_threads_override, n > 0 ? n : 0);
}

int
parpy_teams_init(void)
{
    static int done = 0;
    if (!done) {
        if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
            PyErr_SetString(PyExc_ImportError, "parpy: pthread_atfork failed");
            return -1;
        }
        done = 1;
    }
    return 0;
}
