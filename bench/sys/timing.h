/* timing.h: the clock and the summary of repeated timings, one definition for every
 * measurement (points, sweep progress, the sgemm yardstick), so "median" means the same
 * thing everywhere. */
#ifndef BENCH_TIMING_H
#define BENCH_TIMING_H

/* Seconds on CLOCK_MONOTONIC. */
double timing_now(void);

/* Median (the mean of the middle two for an even count), minimum and maximum of count > 0
 * timings. Sorts t in place: record the timings in run order first if they are wanted. */
void timing_summary(double *t, int count, double *median, double *min, double *max);

#endif
