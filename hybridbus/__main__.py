from hybridbus.cli import main

main()
