/* conn_memory.h — the memory of a spike of client connections, given back
 * to the system once most of them closed (server-internal). Any thread; no
 * lock. */
#ifndef TF_CONN_MEMORY_H
#define TF_CONN_MEMORY_H

/* A client connection of this process started. */
void tf_conn_memory_opened(void);
/* One ended: past a spike, the free heap memory may be trimmed here. */
void tf_conn_memory_closed(void);

#endif
