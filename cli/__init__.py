"""``emcoins``: the command-line client of the EM-Coins job service."""
