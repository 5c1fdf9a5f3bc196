"""The built-in lab: mail and DNS servers on loopback for the demo, the tests and benchmarks.

``process`` holds what every launcher shares (free ports, waiting for a listener, stopping
cleanly); each real server has a launcher module that writes its configuration into a
temporary directory and runs the Debian package's binary there.
"""
