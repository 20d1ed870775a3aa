from fmbench.cli import main_entry

main_entry()
