"""Write requirements.lock.txt: every wheel-installed distribution of the venv, pinned.

`pip freeze` is not enough here: the ROS 2 wheels carry nested ``*.egg-info`` folders for their
Python packages (``action_msgs``, ``rclpy``, ...), which pip lists as distributions of their own
although no index serves them. Only ``*.dist-info`` installs from an index are kept; the
workspace's editable packages and tools not in requirements.txt's closure are left out.

Usage: .venv/bin/python tools/freeze_lock.py [--exclude NAME ...] > requirements.lock.txt
"""

import argparse
import json
import sys
from importlib import metadata


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--exclude',
        nargs='*',
        default=['pip', 'setuptools', 'wheel', 'py-spy'],
        help='distributions to leave out (default: pip setuptools wheel py-spy)',
    )
    args = parser.parse_args()
    exclude = {n.lower() for n in args.exclude}
    pins = {}
    for dist in metadata.distributions():
        path = str(getattr(dist, '_path', ''))
        if not path.endswith('.dist-info'):
            continue
        direct = dist.read_text('direct_url.json')
        if direct and json.loads(direct).get('dir_info', {}).get('editable'):
            continue
        name = dist.metadata['Name']
        if name.lower() not in exclude:
            pins[name.lower()] = f'{name}=={dist.version}'
    sys.stdout.write(''.join(pins[k] + '\n' for k in sorted(pins)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
