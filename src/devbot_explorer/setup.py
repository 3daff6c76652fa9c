from setuptools import find_packages, setup

package_name = 'devbot_explorer'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=[
        'devbot',
        'toroidal_sim',
        'jetbot_driver',
        'world_model_node',
        'numpy',
        'torch',
        'matplotlib',
    ],
    zip_safe=True,
    maintainer='devbot maintainers',
    maintainer_email='maintainers@devbot.invalid',
    description='Session explorer, model workbench, action checks and demo sessions: '
    'tools around recorded sessions and trained world models.',
    license='Apache-2.0',
    entry_points={
        'devbot.commands': [
            'explore = devbot_explorer.explore_cli:main',
        ],
    },
)
