//! `FrameRows` -> the binary COPY tuples of vehicle_telemetry, drive_motor_telemetry,
//! battery_pack_telemetry and alarm_events (owner: n3-py).
