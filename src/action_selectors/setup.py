from setuptools import find_packages, setup

package_name = 'action_selectors'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['numpy', 'devbot'],
    zip_safe=True,
    maintainer='devbot maintainers',
    maintainer_email='maintainers@devbot.invalid',
    description=(
        'Swappable action selectors (constant, sequence, random, uncertainty, ...) as '
        'ROS-free policies and a selector node.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'selector_node = action_selectors.node:main',
            'interactive_selector = action_selectors.interactive:main',
        ],
    },
)
