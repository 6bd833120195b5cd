"""Cluster mode: PostgreSQL + NATS JetStream wiring for several nodes (SPEC "Deployment shapes").

- `interfaces`: the small interfaces every node is built from, embedded or clustered;
- `config`: what cluster mode demands of the settings, and the start-up check of its services;
- `names`: every NATS bucket/subject name and PostgreSQL lock key the cluster uses;
- `nats`: the node's one NATS connection;
- `registry`: nodes and their heartbeats (a NATS KV bucket whose entries expire);
- `blobs`: bundles and layer tarballs shared in PostgreSQL, cached in each node's data dir;
- `layers`: dependency layers built once for the whole cluster, under a PostgreSQL lock;
- `slots`: tier limits for the whole cluster: slots leased to nodes in blocks from PostgreSQL;
- `queue`: the async queue's JetStream stream and the door async invocations go through;
- `consumer`: the invokers' side of that queue (fetch, run, ack once the record is final);
- `gateway`: what a gateway does with invocations: sync ones to invokers, async ones to the queue;
- `router`: a gateway's side of a sync invocation: choose an invoker, ask it over NATS, relay;
- `placement`: the order in which a gateway asks invokers (warm first, then rendezvous);
- `invoker_service`: an invoker's side: requests on its own subject, run on its engine;
- `wire`: the messages between the two (versioned, in parts when large);
- `changes`: activations and deletions announced to every node.

Which implementation a node uses is decided in one place: `frazil.wiring`.
"""
