-- {{vehicle_stats}}: the aggregate columns after (vin, bucket), one list for both flavours:
-- the plain summary function's SELECT and the continuous aggregates' (0003_aggregates.*.sql).
-- These leading comment lines are the part's description and are not included.
count(*)                                        AS frames,
min(ts)                                         AS first_ts,
max(ts)                                         AS last_ts,
min(odometer_km)                                AS odometer_min_km,
max(odometer_km)                                AS odometer_max_km,
max(odometer_km) - min(odometer_km)             AS distance_km,
sum(total_voltage_v::float8 * greatest(total_current_a, 0))
    * EXTRACT(epoch FROM max(ts) - min(ts))::float8
    / nullif(count(*) - 1, 0) / 3.6e6           AS energy_out_kwh,
sum(total_voltage_v::float8 * greatest(-total_current_a, 0))
    * EXTRACT(epoch FROM max(ts) - min(ts))::float8
    / nullif(count(*) - 1, 0) / 3.6e6           AS energy_in_kwh,
min(soc_pct)                                    AS soc_min_pct,
max(soc_pct)                                    AS soc_max_pct,
max(max_temp_c)                                 AS max_temp_c,
max(max_cell_voltage_v)                         AS max_cell_voltage_v,
min(min_cell_voltage_v)                         AS min_cell_voltage_v,
max(max_alarm_level)                            AS max_alarm_level,
count(*) FILTER (WHERE max_alarm_level > 0)     AS alarm_frames,
count(*) FILTER (WHERE max_alarm_level >= 3)    AS severe_alarm_frames
