/* ring.h: exact attention over P ranks that each hold n/P of the sequence (Ring Attention: Liu,
 * Zaharia, Abbeel, "Ring Attention with Blockwise Transformers for Near-Infinite Context", 2023;
 * reference implementation github.com/haoliuhl/ringattention, ringattention/ringattention_jax.py).
 *
 * Rank r holds the queries, keys and values of its rows only. The key/value blocks travel once
 * around the ring: at step s rank r holds rank (r - s) mod P's block, computes its queries
 * against it with the tile kernel, and meanwhile passes the block on to rank r + 1 and receives
 * the next one from rank r - 1 (double-buffered, so the transfer runs under the compute). The
 * softmax over the P blocks is merged exactly as lsh merges its rounds (tile_end_merge).
 *
 * Backward: the same ring. K and V travel ahead as in the forward; the gradients of a block
 * (dK, dV) follow one step behind: each rank adds its share to the sum it received from the
 * previous rank and passes it on, so after P steps each block's dK and dV arrive at their owner,
 * summed in ring order (rank r, r + 1, ...): the same order for any thread count.
 *
 * attn/ stays free of MPI: the ring is written against attn_ring_exchange, which bench/
 * implements with MPI. The registered method `ring` runs one rank over the whole sequence, so it
 * runs and is tested wherever the other methods are.
 *
 * Row layout (param `layout`): contiguous gives rank r rows [r n / P, (r + 1) n / P); zigzag
 * cuts the sequence into 2P chunks and gives rank r chunks r and 2P - 1 - r, so under a causal
 * mask every rank computes about the same number of scores (the early chunk sees few keys, the
 * late one many). auto: zigzag when causal (and n >= 2P), contiguous otherwise. A rank's local tensors are
 * (B, H, rows, d): its chunks' rows in sequence order.
 *
 * bf16 (shape.dtype): the K and V blocks travel as bf16 (half the bytes); a rank merges the P
 * blocks' outputs into an fp32 copy of its rows and rounds them once, and adds its dq up in fp32;
 * the dK, dV sums travel as fp32. */
#ifndef ATTN_RING_H
#define ATTN_RING_H

#include <stddef.h>
#include <stdint.h>

#include "attn.h"

/* Channels of the exchange: the key and the value blocks (two messages, so a rank sends its own
 * block from its inputs, uncopied), and the dK/dV sums of the backward. */
enum { ATTN_RING_K, ATTN_RING_V, ATTN_RING_GRAD, ATTN_RING_CHANNELS };

typedef struct attn_ring_exchange {
    int rank, ranks;
    void *ctx;
    /* shift and wait may be NULL when ranks == 1: the ring never calls them then. */
    /* Starts sending send_bytes at `send` to rank (rank + 1) % ranks and receiving recv_bytes
     * into `recv` from rank (rank - 1) % ranks, on channel `chan`; neither buffer is touched
     * until wait(chan). At most one shift per channel is in flight. Returns 0 or nonzero. */
    int (*shift)(void *ctx, int chan, const void *send, size_t send_bytes, void *recv,
                 size_t recv_bytes);
    /* Completes the channel's shift. Returns 0 or nonzero (a failed transfer). */
    int (*wait)(void *ctx, int chan);
    /* Optional (NULL: not called): lets the transfers in flight advance while the rank
     * computes, for a library that moves a large message only inside its own calls (MPI's
     * progress rule). Called between tiles, only from the thread that called the ring. */
    void (*progress)(void *ctx);
} attn_ring_exchange;

/* The rows of one rank: one or two chunks, in sequence order. */
typedef struct attn_ring_part {
    int chunks;
    int64_t start[2], len[2]; /* global first row and row count of each chunk */
    int64_t rows;             /* len[0] + len[1] */
} attn_ring_part;

/* What one rank's forward and backward cost: the method's attn_cost for this rank's rows, and
 * what it sends. */
typedef struct attn_ring_cost {
    attn_cost cost;            /* workspace, flops and scores of this rank */
    double send_bytes;         /* sent by this rank in one forward */
    double bwd_send_bytes;     /* sent by this rank in one backward */
    int64_t rows;              /* this rank's rows */
    int64_t max_block_rows;    /* the largest rank's rows: the blocks in flight are this big */
} attn_ring_cost;

/* Whether P ranks can split this shape: 0, or ATTN_EUNSUPPORTED with *why (every rank needs
 * rows: n >= P, and n >= 2P for zigzag's two chunks). Call after attn_check. */
int attn_ring_check(const attn_shape *s, const attn_params *p, int ranks, const char **why);
/* Rank `rank`'s rows of P. */
void attn_ring_part_of(const attn_shape *s, const attn_params *p, int ranks, int rank,
                       attn_ring_part *part);
/* The cost of one rank with nthreads threads. */
void attn_ring_cost_of(const attn_shape *s, const attn_params *p, int ranks, int rank,
                       int nthreads, attn_ring_cost *c);

/* One rank's forward: t holds the rank's rows (q, k, v, out (B, H, rows, d), lse (B, H, rows));
 * s is the whole sequence's shape; work holds cost.workspace_bytes. Every rank of the exchange
 * must call it with the same s and p. Returns 0, ATTN_EUNSUPPORTED (the exchange failed). */
int attn_ring_forward(const attn_shape *s, const attn_params *p, const attn_ring_exchange *x,
                      const attn_tensors *t, void *work, int nthreads);
/* One rank's backward, its rows in g as in the forward; work holds cost.bwd_workspace_bytes. */
int attn_ring_backward(const attn_shape *s, const attn_params *p, const attn_ring_exchange *x,
                       const attn_grads *g, void *work, int nthreads);

#endif
