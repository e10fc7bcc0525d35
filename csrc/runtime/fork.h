/* Forks counted: what a process made before it forked belongs to the
 * parent's threads (one of them may have held its lock at the fork). Plain C. */
#ifndef PARPY_RUNTIME_FORK_H
#define PARPY_RUNTIME_FORK_H

/* Forks this process descends from since parpy was loaded; 0 in the
   process that loaded it. parpy_fork_init registers the counting (once). */
unsigned parpy_fork_generation(void);
int parpy_fork_init(void); /* 0, or -1 if pthread_atfork failed */

#endif /* PARPY_RUNTIME_FORK_H */
