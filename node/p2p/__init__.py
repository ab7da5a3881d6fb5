"""Everything that touches py-libp2p: hosts, warm streams, gossip, membership, bitswap.

No module outside this package imports ``libp2p``'s private names, and every patch
of py-libp2p (and every private name used) is in :mod:`node.p2p.compat`, applied
once per process before any host is made and checked against the pinned version.

- :mod:`node.p2p.transport`: a node's two hosts and its direct messages;
- :mod:`node.p2p.streams`: request/reply over one warm stream per peer;
- :mod:`node.p2p.frames`: the frames those streams carry;
- :mod:`node.p2p.gossip`: the job topic on gossipsub (the fallback path);
- :mod:`node.p2p.membership`: who is alive, by anti-entropy;
- :mod:`node.p2p.exchange`: blocks over bitswap;
- :mod:`node.p2p.identity`: a node's key and the keys inside peer ids.
"""
