"""Device and protocol drivers: GB/T 27930 over CAN, Modbus devices, the MQTT grid-operator link.
Drivers talk; they never decide power."""
