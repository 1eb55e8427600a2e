from aris.cli import main

main()
