"""Simulators: the one place that makes test data (frames, fleets, rule scenarios, storage rows)
and reads back what the service exposes (Prometheus text). Tests, benchmarks, the demo and the
load generator all use these; the service never does.

Which module for what:

- ``envelope``: the frame envelope every other builder seals with -- ``frame`` (header, unit,
  BCC), ``reseal`` (BCC after patching bytes), ``seal`` (length and BCC after a mutation),
  ``time_bytes`` / ``china_time`` (the 6-byte Beijing collection time), ``vin_of``.
- ``framebuilder``: golden unit tests -- a frame from commented hex pieces, read as the spec
  table it checks (``build``, ``block``, ``decode_json``, ``reject``).
- ``fleet``: realistic traffic of both editions for the load generator, the demo and the
  pipeline integration tests -- vehicles that drive, charge and park, reissue after gaps, bad
  frames, one thermal runaway (``fleet_messages``); ``options``: its ``FleetOptions``.
- ``chargers``: charging piles in the charger profile and their operators' T/CEC 102 pushes,
  with sessions of the fleet's vehicles and one connector stuck in fault (``charger_messages``).
- ``packs``: standalone battery packs in swap stations, storage, second life and recycling,
  and the packs the fleet's vehicles swap (``pack_messages``).
- ``plans``: the identities and couplings the three share, as pure functions of the options
  and an index (who charges where and when, which swap takes which pack).
- ``world``: all three kinds merged in time order, for the load generator and the demo
  (``world_messages``).
- ``scale``: traffic of millions of devices with bounded memory for ``loadgen --devices``:
  ``identities`` (VINs with check digits, pack codes, charger ids from seed and index) and
  ``cycle`` (a vehicle's drive/park/charge day in closed form, faults); ``recordfile``: the
  record file of ``loadgen --out`` / ``--replay``.
- ``bench_frames``: millions of distinct real-time frames fast, for benchmark preloads (fleet
  templates with the time patched in place).
- ``scenarios``: decoded rows (no bytes) of a normal day and a thermal runaway, for the rule
  engine's tests and benchmark.
- ``synthetic``: storage rows of chosen shapes (cells, probes, sentinels) for writer, schema and
  query tests.
- ``promtext``: the service's /metrics read back -- samples, sums over labels, histograms and
  their quantiles -- for integration tests, benchmarks and the demo.
"""
