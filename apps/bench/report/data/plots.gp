set terminal pngcairo size 1280,760
set termoption noenhanced
set grid
set key outside right top
set style fill solid 0.6 border -1
set boxwidth 0.7
set output 'throughput.png'
set title 'throughput per workload: mpx backends beside their peers (log)'
set logscale y
set ylabel 'tasks/s (median, bar: range)'
set xtics rotate by -50 font ',9'
set bmargin 16
unset logscale x
set xrange [-1:30]
unset xlabel
plot 'data/throughput.dat' using 1:($6==1?$3:1/0):xtic(2) with boxes lc rgb '#1f77b4' title 'mpx', '' using 1:($6==0?$3:1/0):xtic(2) with boxes lc rgb '#ff7f0e' title 'peer', '' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 notitle
unset xrange
set bmargin
set xtics norotate font ''
set output 'farm.png'
set title 'farm: ''true'' commands per second (mpx-farm -j W, xargs -P W, parallel -j W)'
set logscale y
set ylabel 'tasks/s (median, bar: range)'
set xtics rotate by -50 font ',9'
set bmargin 16
unset logscale x
set xrange [-1:3]
unset xlabel
plot 'data/farm.dat' using 1:($6==1?$3:1/0):xtic(2) with boxes lc rgb '#1f77b4' title 'mpx', '' using 1:($6==0?$3:1/0):xtic(2) with boxes lc rgb '#ff7f0e' title 'peer', '' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 notitle
unset xrange
set bmargin
set xtics norotate font ''
set output 'metg.png'
set title 'METG: efficiency against task grain (50%: the METG)'
set logscale x
set xlabel 'task grain (us)'
set ylabel 'efficiency (median, bar: range)'
unset logscale y
set yrange [0:*]
set arrow from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 2
plot 'data/metg.dat' index 0 using 1:2:3:4 with yerrorlines lw 2 title 'mpx-threads', 'data/metg.dat' index 1 using 1:2:3:4 with yerrorlines lw 2 title 'mpx-processes', 'data/metg.dat' index 2 using 1:2:3:4 with yerrorlines lw 2 title 'openmp-task'
unset logscale y
unset arrow
set output 'payload.png'
set title 'payload bandwidth against size'
set logscale x
set xlabel 'payload (MiB)'
set ylabel 'GB/s (median, bar: range)'
unset yrange
set logscale y
plot 'data/payload.dat' index 0 using 1:2:3:4 with yerrorlines lw 2 title 'mpx-processes args', 'data/payload.dat' index 1 using 1:2:3:4 with yerrorlines lw 2 title 'mpx-processes results', 'data/payload.dat' index 2 using 1:2:3:4 with yerrorlines lw 2 title 'mpx-mpi args', 'data/payload.dat' index 3 using 1:2:3:4 with yerrorlines lw 2 title 'mpx-mpi results', 'data/payload.dat' index 4 using 1:2:3:4 with yerrorlines lw 2 title 'limit-memcpy', 'data/payload.dat' index 5 using 1:2:3:4 with yerrorlines lw 2 title 'limit-socketpair'
unset logscale y
unset arrow
