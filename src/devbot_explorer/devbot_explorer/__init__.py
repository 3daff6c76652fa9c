"""Tools around recorded sessions and trained world models, outside the robot's graph.

The session explorer (tables, figures and HTML of sessions and a checkpoint), the model workbench
(load, run, analyse and train a world model interactively), the robots' action checks, generated
demo sessions and the ``devbot explore`` command.
"""
