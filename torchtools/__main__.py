from torchtools.cli import main

main()
