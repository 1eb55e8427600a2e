"""Aris as a DICOM node: studies in from a PACS, results back to it as DICOM.

One module per concern:

===============  ==============================================================================
module           what it does
===============  ==============================================================================
``settings``     named PACS connections, the node and its routing rules, as the config file has them
``urls``         ``dicomweb://NAME/studies/<uid>/series/<uid>`` URLs: parse, resolve NAME, make public
``dicomweb``     a dicomweb-client with auth, timeouts, retries with backoff and Orthanc's pitfalls
``source``       the ``dicomweb`` input source: ``fetch``, ``digest``, ``public``, ``worklist``
``dimse``        pynetdicom SCU calls: C-ECHO, C-FIND, C-MOVE and C-STORE to a configured peer
``rules``        routing: which series of a received study run which task (pure functions)
``sr``           the result as a Comprehensive SR (highdicom), validated and read back before it leaves
``gsps``         localization boxes as a Grayscale Softcopy Presentation State, for viewers without SR
``state``        the node's tables in the store: studies, instances, routed jobs, sends
``results``      running a routed job through :func:`aris.runner.run_task` and queueing its SR
``send``         sending queued results (STOW-RS or C-STORE), retried with backoff until they succeed
``node``         the Storage SCP that receives studies and drives the rest
===============  ==============================================================================

Importing this package imports nothing heavy (:mod:`aris.config` reads ``settings`` from here).
"""
