from setuptools import find_packages, setup

package_name = 'toroidal_sim'

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
        'Simulated toroidal dot world: a white disc on black that moves right on a '
        'wrapping 224x224 image.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'toroidal_sim_node = toroidal_sim.node:main',
        ],
    },
)
