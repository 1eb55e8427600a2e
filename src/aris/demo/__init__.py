"""``aris demo``'s material: five bundled studies (:mod:`aris.demo.studies`, sources in README.md), the
stand-in models built locally (:mod:`aris.demo.tiny`) and the generations and web UI run on them."""
