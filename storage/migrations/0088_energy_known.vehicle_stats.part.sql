-- {{vehicle_stats}} as of 0088: 0003_aggregates.vehicle_stats.part.sql with energy counted
-- over the frames whose power is known (0003 counted a frame with an unknown current as 0 kW:
-- greatest(NULL, 0) is 0). Same columns, same order, same types.
-- These leading comment lines are the part's description and are not included.
count(*)                                        AS frames,
min(ts)                                         AS first_ts,
max(ts)                                         AS last_ts,
min(odometer_km)                                AS odometer_min_km,
max(odometer_km)                                AS odometer_max_km,
max(odometer_km) - min(odometer_km)             AS distance_km,
-- mean power of the frames whose voltage and current are both known (NULL when none is)
-- x the frames' sampling intervals (count x span / (count - 1)), as 0003 scaled its sum
sum(total_voltage_v::float8 * greatest(total_current_a, 0))
        FILTER (WHERE total_voltage_v IS NOT NULL AND total_current_a IS NOT NULL)
    / nullif(count(*) FILTER (
        WHERE total_voltage_v IS NOT NULL AND total_current_a IS NOT NULL), 0)
    * count(*) * EXTRACT(epoch FROM max(ts) - min(ts))::float8
    / nullif(count(*) - 1, 0) / 3.6e6           AS energy_out_kwh,
sum(total_voltage_v::float8 * greatest(-total_current_a, 0))
        FILTER (WHERE total_voltage_v IS NOT NULL AND total_current_a IS NOT NULL)
    / nullif(count(*) FILTER (
        WHERE total_voltage_v IS NOT NULL AND total_current_a IS NOT NULL), 0)
    * count(*) * EXTRACT(epoch FROM max(ts) - min(ts))::float8
    / nullif(count(*) - 1, 0) / 3.6e6           AS energy_in_kwh,
min(soc_pct)                                    AS soc_min_pct,
max(soc_pct)                                    AS soc_max_pct,
max(max_temp_c)                                 AS max_temp_c,
max(max_cell_voltage_v)                         AS max_cell_voltage_v,
min(min_cell_voltage_v)                         AS min_cell_voltage_v,
max(max_alarm_level)                            AS max_alarm_level,
count(*) FILTER (WHERE max_alarm_level > 0)     AS alarm_frames,
count(*) FILTER (WHERE max_alarm_level >= 3)    AS severe_alarm_frames
