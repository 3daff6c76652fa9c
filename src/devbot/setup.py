from setuptools import find_packages, setup

package_name = 'devbot'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['numpy', 'pyyaml'],
    zip_safe=True,
    maintainer='devbot maintainers',
    maintainer_email='maintainers@devbot.invalid',
    description=(
        'Shared devbot library and CLI: action space, image conversion, QoS and topic '
        'names, launcher, viewer.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'devbot = devbot.cli:main',
            'recorder_node = devbot.bag.record:node_main',
            'player_node = devbot.bag.play:node_main',
        ],
        # `devbot <command>`: the subcommands this package owns (devbot.cli discovers the group)
        'devbot.commands': [
            'launch = devbot.launcher:main',
            'view = devbot.viewer:main',
            'record = devbot.bag.record:main',
            'play = devbot.bag.play:main',
            'bag = devbot.bag.cli:main',
            'foxglove = devbot.foxglove_bridge:main',
            'import-original = devbot.bag.import_original:main',
        ],
    },
)
