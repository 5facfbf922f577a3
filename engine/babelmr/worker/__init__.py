"""What runs inside a task: import the inputs, run the program, export the partitioned output.

Nothing here imports the coordinator or the backends: the task spec (`babelmr.spec`) is the contract.
"""
