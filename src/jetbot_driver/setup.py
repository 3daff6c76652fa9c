from setuptools import find_packages, setup

package_name = 'jetbot_driver'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['devbot'],
    zip_safe=True,
    maintainer='devbot maintainers',
    maintainer_email='maintainers@devbot.invalid',
    description='JetBot driver over RPyC (not built yet).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [

        ],
    },
)
