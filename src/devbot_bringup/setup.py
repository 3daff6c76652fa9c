"""devbot_bringup: data only. ``launch`` and ``config`` here are links to the repository's
top-level launch/ and config/; both are installed to ``share/devbot_bringup``, where
``ros2 launch devbot_bringup FILE``, ``devbot launch devbot_bringup FILE`` and
``$(find-pkg-share devbot_bringup)`` find them."""

from glob import glob
from os.path import isfile

from setuptools import setup

package_name = 'devbot_bringup'


def files(pattern: str) -> list[str]:
    return sorted(path for path in glob(pattern) if isfile(path))


setup(
    name=package_name,
    version='0.1.0',
    packages=[],
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', files('launch/*.launch.yaml')),
        ('share/' + package_name + '/config', files('config/*')),
    ],
    zip_safe=True,
    maintainer='devbot maintainers',
    maintainer_email='maintainers@devbot.invalid',
    description='Launch files and configuration of the devbot robots, installed to '
    'share/devbot_bringup.',
    license='Apache-2.0',
)
