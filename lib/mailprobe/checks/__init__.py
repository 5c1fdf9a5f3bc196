"""One module per plugin: its options, its Nagios objects and main()."""
