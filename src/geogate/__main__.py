from geogate.cli import main

main()
